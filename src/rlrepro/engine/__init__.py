"""The one SAC engine of both papers: networks (`networks`), replay (`replay`), the learner (`learner`) and its
configuration (`config`). The continual suite (`rlrepro.continual`) and the sparse suite (`rlrepro.sparse`) each
translate their config block into a `LearnerConfig` flavour and drive `SACLearner` from their own loops."""
