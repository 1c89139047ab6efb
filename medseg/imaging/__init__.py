"""Clinical imaging formats: NIfTI volumes, DICOM series and DICOM SEG, the three MR
sequences, 2-D slice and mask files, folder listing, and the size caps checked from headers.

Import from the module that defines a name (``medseg.imaging.nifti``...): importing this
package loads nothing else (pydicom and highdicom stay unloaded until a module needs them).
"""
