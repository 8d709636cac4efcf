/* placeholder until written */ extern int fp__placeholder_store_store;
