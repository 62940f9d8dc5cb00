//! A router that records what it routes: every `(method, path)` added through it is kept in a
//! list, so the authorization matrix (`tests/authz.rs`) enumerates the routes from the same
//! declarations that build the router, and no route can escape it.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodRouter, get, post, put};

/// A router and the `(method, path)` of each of its routes.
pub struct Routes<S> {
    router: Router<S>,
    list: Vec<(Method, String)>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes { router: Router::new(), list: Vec::new() }
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    fn add(mut self, method: Method, path: &str, route: MethodRouter<S>) -> Self {
        self.router = self.router.route(path, route);
        self.list.push((method, path.to_string()));
        self
    }

    /// `GET path`.
    pub fn get<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::GET, path, get(handler))
    }

    /// `POST path`.
    pub fn post<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::POST, path, post(handler))
    }

    /// `PUT path`.
    pub fn put<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::PUT, path, put(handler))
    }

    /// Mounts `other` under `prefix`, with its fallbacks set by `finish`.
    pub fn nest(mut self, prefix: &str, other: Routes<S>, finish: impl FnOnce(Router<S>) -> Router<S>) -> Self {
        self.list.extend(other.list.into_iter().map(|(m, p)| (m, format!("{prefix}{p}"))));
        self.router = self.router.nest(prefix, finish(other.router));
        self
    }

    /// Adds the routes of `other` beside these.
    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.list.extend(other.list);
        self.router = self.router.merge(other.router);
        self
    }

    /// The `(method, path)` of every route, in the order added.
    pub fn list(&self) -> &[(Method, String)] {
        &self.list
    }

    /// The router.
    pub fn into_router(self) -> Router<S> {
        self.router
    }
}
