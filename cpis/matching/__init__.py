"""Pure matching code: NHS number rules and (later) demographic scoring."""
