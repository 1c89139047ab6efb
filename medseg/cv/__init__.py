"""Patient-level cross-validation (``medseg cv``), after nnU-Net's five-fold protocol.

The test patients are held out once; the others are dealt into K patient-disjoint folds
(:mod:`~medseg.data.folds`); one run per fold trains on the other folds and validates on its
own, through comparison's run machinery (:mod:`~medseg.cv.execution`: here, or planned for a
job scheduler and run with ``medseg compare-run``). Every non-test patient is then scored
once, by the fold that did not train on it, and the test patients by the fold ensemble and by
each fold alone, with and without flip TTA (:mod:`~medseg.cv.scoring`); a postprocessing step
is kept only where the out-of-fold scores say so (:mod:`~medseg.cv.choice`); the record is
``cv_results.json`` and ``cv_results.md`` (:mod:`~medseg.cv.report`).
"""
