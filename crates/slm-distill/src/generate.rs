//! `slm distill generate`: teacher-written training data (being written; see the helper's
//! brief in the distillation issue).
