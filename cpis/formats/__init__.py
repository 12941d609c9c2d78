"""The service's file formats, pure: bytes in, values out (and back), no I/O.

- :mod:`cpis.formats.upload_file`: an LA's upload file, JSON or CSV
  (``schemas/uploads.md``), parsed into a :class:`~cpis.model.uploads.ParsedUpload`
  or refused whole (CPF01);
- :mod:`cpis.formats.plan_fields`: a plan's fields, checked by the one set of rules
  the upload file and the plan API share;
- :mod:`cpis.formats.acknowledgement`: an upload's acknowledgement as the JSON
  every channel sends and the database keeps;
- :mod:`cpis.formats.person_index_file`: the local person index's load file
  (``schemas/person-index.md``);
- :mod:`cpis.formats.trace_file`: the file ``cpis trace`` reads and the review
  CSV it writes.

They sit below the services (which call them) and above the ports, and import
only the model, matching and errors. Import each from its module; this package
re-exports nothing.
"""
