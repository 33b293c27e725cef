//! End-to-end tests: the real `nimbus` binary, real node and python3 processes, real HTTP
//! over loopback.

mod harness;

mod auth;
mod aws_cli;
mod aws_dynamodb;
mod aws_events;
mod aws_kinesis;
mod aws_lambda;
mod aws_s3;
mod aws_sdk_v2;
mod aws_sns;
mod aws_sqs;
mod bounds;
mod cli;
mod coldstart;
mod dashboard;
mod deploy;
mod dev;
mod events;
mod express;
mod framework;
mod gateway;
mod hello;
mod isolation;
mod manifest;
mod observe;
mod pool;
mod provided;
mod requirements;
mod runtimes;
mod sdk;
mod seccomp;
mod secrets;
mod slow_clients;
mod stage;
mod streams;
mod tls;
mod typescript;
mod wasm;
mod websocket;
mod workers;
mod workers_objects;
mod workers_sockets;
mod workflows;
mod wsgi;
