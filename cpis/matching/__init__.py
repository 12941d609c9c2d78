"""Pure matching code: NHS number rules, name normalisation and demographic comparison."""
