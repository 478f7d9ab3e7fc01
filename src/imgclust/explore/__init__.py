"""Commands on a finished run.

Neighbours of an image (:mod:`.neighbors`), assignment of new
images (:mod:`.assign`), animations of the clustering (:mod:`.animate`), Grad-CAM explanations
(:mod:`.explain`) and the supervised linear-probe reference (:mod:`.probe`).
"""
