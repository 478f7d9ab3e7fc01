"""Deep clustering heads trained on frozen embeddings: SCAN, TEMI and TURTLE (several spaces).

All are scikit-learn style estimators (``fit`` / ``predict`` / ``predict_proba``) with soft
assignments in ``probabilities_``. Importing this package imports torch; ``imgclust.cluster``
only imports it when ``scan`` / ``temi`` / ``turtle`` is used.
"""

from .scan import SCAN, entropy, scan_loss, self_label_loss
from .temi import TEMI, beta_pmi, temi_loss
from .turtle import TURTLE

__all__ = ["SCAN", "TEMI", "TURTLE", "scan_loss", "self_label_loss", "entropy", "temi_loss", "beta_pmi"]
