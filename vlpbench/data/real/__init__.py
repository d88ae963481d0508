"""Adapters for real chest X-ray datasets read from the user's own copy, in their published layout.

One module per dataset (``mimic_cxr``, ``chexpert``, ``rsna``, ``siim``, ``covidx``,
``object_cxr``) on a shared base (:mod:`.base`: splits in memory, manifests, verification) and
shared helpers (:mod:`.common`: tables, images, RLE, split recipes). Each module's docstring says
which layout facts come from a source that was read and which are written from memory.
"""
