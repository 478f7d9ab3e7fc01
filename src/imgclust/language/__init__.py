"""The language side.

Name clusters, search a run by text or image, fine-tune CLIP on
image-caption pairs, and compare encoders on the same images.
"""
