"""The main job and fine-tuning at toy size, shared by the end-to-end tests: a six-document
corpus (`DOCS`), the main job's config with every stage at two steps (`toy_job`) and fine-tuning's
toy flags (`FINETUNE_TOY`), and the main job's smallest command line (`PRETRAIN_TOY`)."""
from realm_tf.stages import pretrain_job

# Six short documents about Warsaw, Paris and the Curies, as JSON lines records.
DOCS = [
    {"title": "Marie Curie", "text": "Marie Curie was born in Warsaw in 1867. She won the Nobel "
     "Prize in Physics in 1903. She later moved to Paris and worked at the Sorbonne."},
    {"title": "Warsaw", "text": "Warsaw is the capital of Poland. The Vistula River flows "
     "through Warsaw. Frederic Chopin grew up in Warsaw before moving to Paris in 1831."},
    {"title": "Sorbonne", "text": "The Sorbonne is a building in Paris. It housed the University "
     "of Paris. Pierre Curie taught there in 1904 after the Nobel Prize."},
    {"title": "Vistula", "text": "The Vistula is the longest river in Poland. It flows into the "
     "Baltic Sea near Gdansk. Krakow also lies on the Vistula."},
    {"title": "Chopin", "text": "Frederic Chopin was a Polish composer. He was born in 1810 in "
     "Zelazowa Wola. He died in Paris in October 1849."},
    {"title": "Nobel Prize", "text": "Alfred Nobel founded the Nobel Prize in 1895. The first "
     "prizes were awarded in Stockholm in 1901. Albert Einstein won the prize in 1921."},
]


def toy_job(dirs, work_dir: str, **overrides) -> pretrain_job.PretrainJobConfig:
  """The main job at toy size on the corpus and annotations in `dirs` ({"corpus",
  "annotations"}): every stage, two steps each."""
  return pretrain_job.PretrainJobConfig(
      work_dir=work_dir, corpus_dir=dirs["corpus"],  # no inputs: the (288-wordpiece) corpus's
      annotations_dir=dirs["annotations"], retriever_preset="tiny",
      retriever_init=None, ict_steps=2, ict_batch_size=4, reader_preset="tiny", reader_init=None,
      reader_warmup_steps=2, reader_warmup_batch_size=2, batch_size=2, num_train_steps=2,
      refresh_every_steps=2, checkpoint_every=2, num_candidates=2, min_recall=0.0,
      heldout_fraction=0.3, heldout_queries=4, **overrides)


# The main job's smallest command line: tiny towers from random weights, one ICT step (which
# exports the first index), no reader warm-up, two REALM steps.
PRETRAIN_TOY = ["--retriever_preset=tiny", "--retriever_init=", "--ict_steps=1",
                "--ict_batch_size=2", "--reader_preset=tiny", "--reader_init=",
                "--reader_warmup_steps=0", "--batch_size=2", "--num_train_steps=2",
                "--refresh_every_steps=2", "--checkpoint_every=2", "--num_candidates=2",
                "--min_recall=0", "--heldout_fraction=0.2", "--heldout_queries=4"]

# Fine-tuning flags at toy size over the recipe's defaults: a tiny reader from random weights,
# two steps.
FINETUNE_TOY = ["--reader_init=", "--reader_preset=tiny", "--num_train_steps=2", "--batch_size=4",
                "--checkpoint_every=2", "--reader_seq_length=64", "--reader_query_length=16",
                "--span_hidden_size=16"]
