"""``streamlit run app/streamlit_app.py``: the page itself ships in the package (medseg.app)."""
from medseg.app.streamlit_app import main
from medseg.data.transforms import use_plain_tensors

use_plain_tensors()
main()
