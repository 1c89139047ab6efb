"""``streamlit run app/streamlit_app.py``: the page itself ships in the package (medseg.app)."""
from medseg.app.streamlit_app import main

main()
