"""The small real work dir the damage and disk-full groups of the fault matrix break: a block
corpus, a retriever's embedder export, an index bundle built from it by the real refresher, a
trainer checkpoint with optimizer slots, and a served SavedModel version.

Everything is toy-sized (a `tiny` retriever with 16/32-token inputs, 24 blocks) so that one
build takes seconds; the files are the ones the product writes at any size.
"""
import dataclasses
import os
import shutil
from typing import Callable, List

from realm_tf.utils import command_line

SERVED_MODEL = "toy"


@dataclasses.dataclass
class ToyWorkDir:
  """Paths of the built work dir, and the retriever its exports come from."""
  root: str
  corpus_dir: str
  model_dir: str
  index_dir: str
  checkpoint_dir: str
  serving_base: str
  serving_template: str  # a good SavedModel version outside the served base path
  retriever: object

  def refresh_config(self, **overrides):
    """The refresher's settings for this work dir (no recall floor: the tower is untrained)."""
    from realm_tf.retrieval.refresh import RefreshConfig  # pylint: disable=g-import-not-at-top
    values = dict(model_dir=self.model_dir, corpus_dir=self.corpus_dir, index_dir=self.index_dir,
                  min_recall=0.0, recall_queries=20, grace_seconds=0.0)
    values.update(overrides)
    return RefreshConfig(**values)


def make_trainer(model_dir: str):
  """The product's Trainer and optimizer (AdamW slots included) over a small Keras model (a
  checkpoint's format does not depend on the model; a small one keeps each try fast)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  from realm_tf.training.optimizer import create_optimizer  # pylint: disable=g-import-not-at-top
  from realm_tf.training.trainer import Trainer  # pylint: disable=g-import-not-at-top
  tf_keras.utils.set_random_seed(0)
  model = tf_keras.Sequential([tf_keras.layers.Dense(256, activation="relu"),
                               tf_keras.layers.Dense(64)])
  model.build((None, 128))
  optimizer = create_optimizer(1e-3, num_train_steps=100, num_warmup_steps=0)
  return Trainer(model, optimizer, None, tf.distribute.get_strategy(), model_dir, 1)


def save_checkpoint(trainer, step: int) -> str:
  """Saves `trainer` at `step` after one zero update (which creates the optimizer's slots, as a
  first training step does); returns the checkpoint prefix."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  weights = trainer.model.trainable_variables
  if not trainer.optimizer.variables():
    trainer.optimizer.apply_gradients(zip([tf.zeros_like(w) for w in weights], weights))
  trainer.step.assign(step)
  trainer.save(step)
  return trainer.manager.latest_checkpoint


def build(root: str, serving: bool = True, checkpoint: bool = True) -> ToyWorkDir:
  """Builds the work dir under `root`: corpus, export 1, bundle 1, and (unless turned off) a
  trainer checkpoint at step 2 and a served version 1 beside a good version-2 template."""
  from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.refresh import IndexRefresher  # pylint: disable=g-import-not-at-top
  from realm_tf.testing import retrieval_fixtures, toy_models  # pylint: disable=g-import-not-at-top
  os.makedirs(root, exist_ok=True)
  work = ToyWorkDir(root=root, corpus_dir=os.path.join(root, "corpus"),
                    model_dir=os.path.join(root, "model"), index_dir=os.path.join(root, "index"),
                    checkpoint_dir=os.path.join(root, "trainer"),
                    serving_base=os.path.join(root, "serving", SERVED_MODEL),
                    serving_template=os.path.join(root, "serving_template"),
                    retriever=retrieval_fixtures.make_retriever())
  retrieval_fixtures.make_corpus(work.corpus_dir)
  embedder_export.export_embedder(work.retriever, work.model_dir, 1)
  IndexRefresher(work.refresh_config()).run_once()
  if checkpoint:
    save_checkpoint(make_trainer(work.checkpoint_dir), 2)
  if serving:
    toy_models.write_numeric_model(work.serving_base, 1)
    work.serving_template = toy_models.write_numeric_model(work.serving_template, 2)
  return work


def files_in_copy_order(directory: str) -> List[str]:
  """The files of `directory` in the order a recursive copy writes them (sorted walk)."""
  out = []
  for parent, dirs, files in os.walk(directory):
    dirs.sort()
    out.extend(os.path.join(parent, f) for f in sorted(files))
  return out


def half_copy(src: str, dst: str, fraction: float) -> str:
  """Copies `src` to `dst` as a copy interrupted after `fraction` of its bytes: the files before
  the cut whole, the one at the cut truncated, the rest missing; returns the truncated file."""
  files = files_in_copy_order(src)
  total = sum(os.path.getsize(f) for f in files)
  left = int(total * fraction)
  cut = ""
  for path in files:
    target = os.path.join(dst, os.path.relpath(path, src))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    size = os.path.getsize(path)
    if left >= size:
      shutil.copyfile(path, target)
      left -= size
      continue
    with open(path, "rb") as f, open(target, "wb") as g:
      g.write(f.read(left))
    cut = target
    break
  return cut


def copy_export(work: ToyWorkDir, step: int, drop=()) -> str:
  """Publishes export 1 again as `step` (less the parts in `drop`): the refresher's newest."""
  from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
  from realm_tf.testing import retrieval_fixtures  # pylint: disable=g-import-not-at-top
  return retrieval_fixtures.copy_export(embedder_export.export_path(work.model_dir, 1),
                                        work.model_dir, step, drop=drop)


def bundle_loads(index_dir: str, version: int = 1):
  """True when the newest bundle of `index_dir` is `version` and loads whole (searcher,
  embedder, matrices); else what is wrong."""
  from realm_tf.retrieval import bundle  # pylint: disable=g-import-not-at-top
  try:
    with bundle.latest(index_dir, load=True) as b:
      return True if b.version == version else f"newest bundle is {b.version}, not {version}"
  except Exception as e:  # pylint: disable=broad-except
    return f"{type(e).__name__}: {e}"


def refuses(call: Callable[[], object], *needles: str):
  """True when `call` raises the kind of error a CLI prints as one `error:` line (exit 2) and
  its message contains every needle; else what happened, on one line."""
  try:
    call()
  except Exception as e:  # pylint: disable=broad-except
    text = " ".join(str(e).split())
    if command_line.is_user_error(e) and all(n in text for n in needles):
      return True
    return f"{type(e).__name__}: {text[:400]}"
  return "no error raised"
