"""The use cases: what the service does, in terms of ports (:mod:`cpis.ports`) and
domain values (:mod:`cpis.model`), one module per use case. The web routes, the
workers and the command line parse what comes in, call one of these, and render
what comes back; none of them touches a store, a transaction or an adapter itself.

- :mod:`cpis.services.lookup`: health's lookup of a child's plans (recording the
  access event and its notifications), the 25 visits, and reads of one resource;
- :mod:`cpis.services.plans`: the LA plan API (put, get, delete) and retention;
- :mod:`cpis.services.uploads`: an LA's upload file, received, checked, applied in
  one transaction and acknowledged, whichever way it came (HTTP, MESH, ``cpis upload``);
- :mod:`cpis.services.verification`: an LA's NHS numbers checked against the person
  index (for uploads, the plan API and tracing);
- :mod:`cpis.services.tracing`: ``cpis trace``, NHS numbers proposed for an LA's records;
- :mod:`cpis.services.person_index`: loading the local person index, and the check
  that tells LAs of NHS numbers the index has retired;
- :mod:`cpis.services.subscriptions`: an LA's FHIR Subscriptions;
- :mod:`cpis.services.inbox`: an LA's inbox, grouped by child a page at a time, and
  acknowledgements (by the person or system acting);
- :mod:`cpis.services.deliveries`: the deliveries that failed (and their retry), and
  Subscriptions in error;
- :mod:`cpis.services.children`: a child by NHS number among the LA's own, and its plans;
- :mod:`cpis.services.upload_history`: an LA's past uploads and their acknowledgements;
- :mod:`cpis.services.la_settings`: an LA's phone numbers, repeat window and channels;
- :mod:`cpis.services.tokens`: access tokens for registered clients;
- :mod:`cpis.services.registration`: the LAs and client systems the operator registers.

Services never import adapters, the web or aiohttp (an import-linter contract
holds them to it). Import each from its module; this package re-exports nothing.
"""
