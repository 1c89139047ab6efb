"""Demo data: real anatomy with synthetic labels, written in the real datasets' layouts
(``medseg demo-data``), and the marker file that says so.

Import from the module that defines a name (``medseg.demo.lgg``, ``medseg.demo.pcam``,
``medseg.demo.marker``).
"""
