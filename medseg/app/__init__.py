"""The clinician-facing Streamlit app and the plain functions it draws with.

Seven modules import streamlit: ``streamlit_app`` (the page: sidebar and tabs), ``widgets``
(shared caches and small views), ``slice_view`` (display settings and the slice viewer),
``lgg_page`` (case, cohort, runs side by side), ``upload_page``, ``pcam_page`` and ``curves_page``. The other
modules (``settings``, ``run_cards``, ``cohort``, ``scoring``, ``viewer``,
``uploads``, ``patches``, ``curves``, ``palette``, ``text``) hold the logic and are tested without a
browser. Start the app with ``medseg app``.
"""
