//! Path routing for the RSGI bridge.
//!
//! Robyn's own server matches paths in Rust with `matchit`; the bridge that
//! serves the same Robyn app under Granian does the same here, so both servers
//! resolve a path to the same route. Robyn writes parameters as `:name` and
//! catch-alls as `*name`; matchit 0.8 writes them `{name}` and `{*name}`, so
//! patterns are translated on insert.

use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Translate a Robyn route pattern (`/movies/:id`, `/files/*rest`) to matchit syntax.
pub fn to_matchit(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| {
            if let Some(name) = segment.strip_prefix(':') {
                format!("{{{name}}}")
            } else if let Some(name) = segment.strip_prefix('*') {
                let name = if name.is_empty() { "path" } else { name };
                format!("{{*{name}}}")
            } else {
                segment.replace('{', "{{").replace('}', "}}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A method-aware route table whose values are small integers (indices into
/// the caller's own list of handlers).
#[derive(Default)]
pub struct RouteTable {
    by_method: HashMap<String, matchit::Router<usize>>,
}

impl RouteTable {
    /// Add `pattern` for `method`; fails on a conflicting or malformed pattern.
    pub fn insert(&mut self, method: &str, pattern: &str, value: usize) -> Result<(), String> {
        self.by_method
            .entry(method.to_ascii_uppercase())
            .or_default()
            .insert(to_matchit(pattern), value)
            .map_err(|e| format!("route {method} {pattern}: {e}"))
    }

    /// The value and the captured parameters for `method` and `path`.
    pub fn lookup(&self, method: &str, path: &str) -> Option<(usize, Vec<(String, String)>)> {
        let router = self.by_method.get(method)?;
        let matched = router.at(path).ok()?;
        let params = matched
            .params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some((*matched.value, params))
    }

    /// Methods (sorted) that have a route matching `path`: the `Allow` header of a 405.
    pub fn allowed_methods(&self, path: &str) -> Vec<String> {
        let mut methods: Vec<String> = self
            .by_method
            .iter()
            .filter(|(_, router)| router.at(path).is_ok())
            .map(|(method, _)| method.clone())
            .collect();
        methods.sort();
        methods
    }
}

/// Python face of [`RouteTable`].
///
/// >>> r = Router(); r.insert("GET", "/movies/:id", 3)
/// >>> r.lookup("GET", "/movies/42")
/// (3, {'id': '42'})
#[pyclass(module = "vedina._native", name = "Router", frozen)]
pub struct PyRouter {
    table: std::sync::RwLock<RouteTable>,
}

#[pymethods]
impl PyRouter {
    #[new]
    fn new() -> Self {
        PyRouter { table: std::sync::RwLock::new(RouteTable::default()) }
    }

    fn insert(&self, method: &str, pattern: &str, value: usize) -> PyResult<()> {
        self.table
            .write()
            .expect("router lock poisoned")
            .insert(method, pattern, value)
            .map_err(PyValueError::new_err)
    }

    fn lookup(&self, method: &str, path: &str) -> Option<(usize, HashMap<String, String>)> {
        self.table
            .read()
            .expect("router lock poisoned")
            .lookup(method, path)
            .map(|(value, params)| (value, params.into_iter().collect()))
    }

    fn allowed_methods(&self, path: &str) -> Vec<String> {
        self.table.read().expect("router lock poisoned").allowed_methods(path)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRouter>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_robyn_patterns() {
        assert_eq!(to_matchit("/movies/:id"), "/movies/{id}");
        assert_eq!(to_matchit("/media/*path"), "/media/{*path}");
        assert_eq!(to_matchit("/*"), "/{*path}");
        assert_eq!(to_matchit("/health"), "/health");
    }

    #[test]
    fn static_beats_parameter_and_params_are_captured() {
        let mut table = RouteTable::default();
        table.insert("GET", "/api/movies/:id", 1).unwrap();
        table.insert("GET", "/api/movies/search", 2).unwrap();
        assert_eq!(table.lookup("GET", "/api/movies/search").unwrap().0, 2);
        let (value, params) = table.lookup("GET", "/api/movies/7").unwrap();
        assert_eq!(value, 1);
        assert_eq!(params, vec![("id".to_string(), "7".to_string())]);
        assert!(table.lookup("POST", "/api/movies/7").is_none());
        assert!(table.lookup("GET", "/api/movies/7/extra").is_none());
    }

    #[test]
    fn reports_allowed_methods() {
        let mut table = RouteTable::default();
        table.insert("GET", "/a/:id", 0).unwrap();
        table.insert("delete", "/a/:id", 1).unwrap();
        assert_eq!(table.allowed_methods("/a/1"), vec!["DELETE", "GET"]);
        assert!(table.allowed_methods("/b").is_empty());
    }

    #[test]
    fn conflicting_routes_are_errors() {
        let mut table = RouteTable::default();
        table.insert("GET", "/a/:id", 0).unwrap();
        assert!(table.insert("GET", "/a/:other", 1).is_err());
    }
}
