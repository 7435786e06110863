//! Integration tests for the `kalandra` command line, run against real git repositories.
//!
//! Fixtures are made by the scripts in `tests/fixtures/` (once, cached by gix-testtools) and
//! copied into a fresh temporary directory per test; see `harness` for the helpers.

mod harness;

mod cli;
mod cli_output;
mod commit_graph;
mod config;
mod divergence;
mod dulwich_server;
mod error_kinds;
mod failures;
mod fault_proxy;
mod faults;
mod flaky;
mod fleet;
mod forge_create;
mod forge_discovery;
mod forge_github_app;
mod forge_gitlab;
mod git_config;
mod git_daemon;
mod github_api;
mod gitlab_api;
mod gitolite;
mod guards;
mod hooks;
mod hostile_input;
mod hostile_transport;
mod http;
mod interop;
mod jgit_server;
mod lfs;
mod lfs_server;
mod listening_server;
mod mirror;
mod nginx;
mod node_server;
mod output;
mod pack;
mod plan;
mod properties;
mod remote_helper;
mod remote_helper_one_connection;
mod remote_helper_v0;
mod scope;
mod split_push;
mod ssh;
mod ssh_config;
mod sshd;
mod trust;
mod watch;
mod watch_http;
