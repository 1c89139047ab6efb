"""The clinician-facing Streamlit app and the plain functions it draws with.

``streamlit_app`` is the page (the only module that imports streamlit); the other modules
(``settings``, ``run_cards``, ``overlays``, ``uploads``, ``scoring``, ``patches``, ``text``)
hold the logic and are tested without a browser. Start the app with ``medseg app``.
"""
