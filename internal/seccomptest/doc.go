// Package seccomptest runs a test's body in a child process under a
// seccomp filter that refuses chosen system calls, as a container runtime's
// profile, a systemd unit's SystemCallFilter= or a sandbox that lacks a
// call does, so that tests can check what the library does when the system
// says no. Only linux/amd64 has it; tests alone import it.
package seccomptest
