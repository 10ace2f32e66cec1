"""The index-refresh stage: one `run(config, strategy)` over the three things the refresher
does for a caller — watch the trainer's exports until training ends, index the newest export
once, or add/remove documents relative to the live bundle (`refresh.IndexRefresher`)."""
import dataclasses
from typing import Dict, List, Optional

import tensorflow as tf

from realm_tf.config_base import ConfigBase
from realm_tf.retrieval.refresh import IndexRefresher, RefreshConfig


@dataclasses.dataclass
class RefreshJobConfig(ConfigBase):
  """The refresh stage: where and how (`refresh`), and what to do — a document update when
  `add`/`remove` name any, else one refresh (`once`), else the watch loop."""
  NESTED = {"refresh": RefreshConfig}
  refresh: RefreshConfig
  once: bool = False
  add: List[str] = dataclasses.field(default_factory=list)  # block-corpus dirs to add
  remove: Optional[str] = None  # file of block ids to remove, one per line


def run(config: RefreshJobConfig, strategy: Optional[tf.distribute.Strategy] = None) -> Dict:
  """Runs the stage; returns what it did (`mode`) and what it published (`bundle`, the path
  or None; the watch loop: `published`, the number of bundles, and `staleness_steps`, each
  one's staleness as it went live)."""
  refresher = IndexRefresher(config.refresh, strategy)
  if config.add or config.remove:
    bundle = refresher.update_documents(add_dirs=config.add, remove_file=config.remove)
    return {"mode": "update", "bundle": bundle.path if bundle else None}
  if config.once:
    bundle = refresher.run_once()
    return {"mode": "once", "bundle": bundle.path if bundle else None}
  published = refresher.run()
  return {"mode": "watch", "published": published, "staleness_steps": refresher.staleness}
