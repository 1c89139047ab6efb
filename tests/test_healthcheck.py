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
def test_serves_app_reads_the_processes_command_lines(tmp_path, argv, expected):
    _process(tmp_path, 1, ["/bin/sh", "-c", "sleep 1"])
    _process(tmp_path, 7, argv)
    (tmp_path / "self").mkdir()  # not a process number: not read
    assert serves_app(tmp_path) is expected


def test_the_main_process_or_one_beside_it_counts(tmp_path):
    _process(tmp_path, 1, ["/opt/venv/bin/python", "/opt/venv/bin/medseg", "app"])
    assert serves_app(tmp_path)
    (tmp_path / "2").mkdir()  # a process that ended before its command line was read
    assert serves_app(tmp_path)


def test_serves_app_is_false_without_proc(tmp_path):
    assert serves_app(tmp_path / "missing") is False
    assert serves_app(tmp_path) is False  # no process at all


def _process(proc, pid, argv):
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


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
