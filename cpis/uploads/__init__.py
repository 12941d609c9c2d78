"""Batch uploads from LA case management systems (SPEC §5): checking a parsed file's
records against the person index (:mod:`cpis.uploads.verify`) and applying it in one
transaction (:mod:`cpis.uploads.apply`). The file format and the acknowledgement's
JSON are in :mod:`cpis.formats`; the values in :mod:`cpis.model.uploads`.
"""
