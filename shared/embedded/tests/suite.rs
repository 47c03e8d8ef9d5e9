//! The core's shared GIVEN/WHEN/THEN suite, run against the SQLite adapter.

mod common;

captcha_core::port_suite!(common::make);
