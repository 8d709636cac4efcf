/* placeholder until written */ extern int fp__placeholder_sim_sim;
