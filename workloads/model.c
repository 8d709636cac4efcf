/* placeholder until written */ extern int fp__placeholder_workloads_model;
