import http.server
import threading

import pytest

from medseg.healthcheck import app_is_healthy, serves_app


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/opt/conda/bin/python", "/opt/conda/bin/medseg", "app"], True),
        (["/opt/conda/bin/python", "/opt/conda/bin/streamlit", "run", "app.py"], True),
        (["/opt/conda/bin/python", "/opt/conda/bin/medseg", "train", "c.yaml"], False),
        (["/opt/conda/bin/python", "/opt/conda/bin/medseg", "train", "--set", "output.dir=app"], False),
    ],
)
def test_serves_app_reads_the_main_process_command_line(tmp_path, argv, expected):
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    assert serves_app(cmdline) is expected


def test_serves_app_is_false_without_proc(tmp_path):
    assert serves_app(tmp_path / "missing") is False


def test_app_is_healthy_probes_the_health_endpoint():
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/_stcore/health" else 404)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert app_is_healthy(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    assert not app_is_healthy(server.server_address[1], timeout=1)
