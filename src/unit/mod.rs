//! Units: names and kinds, the unit-file model, parsing and validation with located errors,
//! loading from the search path with drop-ins, and the dependency graph (DESIGN §1–§2).

pub mod diag;
pub mod doc;
pub mod graph;
pub mod host;
pub mod keys;
pub mod load;
pub mod model;
pub mod name;
pub mod validate;

pub use diag::{Diagnostic, Location, Severity};
pub use graph::Graph;
pub use load::{
    Entry, LoadState, SearchPath, UnitSet, load_files, load_path, parse_unit, parse_unit_sources,
};
pub use model::*;
pub use name::{Kind, NameError, UnitName};
