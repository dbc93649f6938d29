"""The CNN two-sample test (Lopez-Paz & Oquab, ICLR 2017): ``two_sample.c2st``, the observer
network (``observer``), folds, AUC and p-values (``stats``), the study's tests with their
controls and frequency sweep (``study``), records and figures."""
