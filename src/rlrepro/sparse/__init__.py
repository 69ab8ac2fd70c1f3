"""The sparse-training suite of the DAPD paper: dense SAC, DAPD, RiGL and RLx2 on gymnasium MuJoCo."""
