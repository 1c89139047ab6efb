"""Training datasets: LGG slices and PCam patches on disk, their patient splits, the input
rule and the MONAI pipelines, and the dataset check.

Samples are dicts. LGG (segmentation): ``image`` float32 (3, S, S) normalized per channel,
``label`` float32 (1, S, S) in {0, 1}, ``patient`` str, ``slice`` int (1-based). PCam
(classification): ``image`` float32 (3, 96, 96), ``label`` float32 (1,), ``index`` int.

Import from the module that defines a name (``medseg.data.lgg``, ``medseg.data.datasets``...):
importing this package loads nothing else (MONAI, h5py stay unloaded until a module needs
them). Clinical file formats are :mod:`medseg.imaging`; demo data is :mod:`medseg.demo`.
"""
