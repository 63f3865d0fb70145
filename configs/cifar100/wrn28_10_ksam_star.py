# K-SAM*: K-SAM with K2 halved midway through training (ksam.txt Sec. 4.1, Table 3).
_base_ = './wrn28_10_ksam.py'

optim_wrapper = dict(k2_halve_at=0.5)
