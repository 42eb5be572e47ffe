//! Predicting TPM PCR and TDX RTMR values of a UKI.
