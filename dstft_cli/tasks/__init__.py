"""Task-driven uses of the DSTFT (Sec. VI-C and VII): frequency tracking, one window for a data set,
a DSTFT layer trained with a classifier. Imports torch, numpy and the core; never click or matplotlib."""
