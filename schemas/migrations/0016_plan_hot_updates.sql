-- Room on plan's pages for each row's next version, so that replacing a plan
-- is a HOT (heap-only tuple) update: the new row goes on the same page and
-- none of plan's three indexes gets a new entry, as long as the subject key is
-- unchanged. A daily upload replaces every plan an LA holds; bench/upload
-- measured every one of those updates HOT with this, and plan's size the same
-- from one upload to the next (pruning frees the dead versions' room).
-- Existing pages keep their rows; pages written from now on are half filled.
ALTER TABLE plan SET (fillfactor = 50);
