"""aiohttp routes and middleware: parse the request, call a service, render the answer."""
