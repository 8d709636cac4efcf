/* placeholder until written */ extern int fp__placeholder_algorithms_algorithm;
