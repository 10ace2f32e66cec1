"""Google's released REALM/ORQA evidence index (blocks.tfr, titles.tfr, encoded.ckpt) read as it
is and imported into a work directory without re-embedding (`importer.run`)."""
