/* placeholder until written */ extern int fp__placeholder_core_scenario;
