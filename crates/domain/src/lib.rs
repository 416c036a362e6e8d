//! triggerd-domain
