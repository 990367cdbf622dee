/* avmctl's commands against a node daemon, over the control protocol
 * (transport/control.h, docs/protocol.md).
 *
 * Each takes the node's address (--node or $AVM_NODE; NULL when neither was given,
 * which send and status refuse) and the command's arguments after its name (and,
 * for exec and obj, after the subcommand), with --node already taken out. Each
 * prints its output (text, or one JSON document with --json) and returns avmctl's
 * exit code: 0 success; 1 the program failed, was killed or has not finished; 2 bad
 * usage, a node that does not answer, or an error reply (the node's message is
 * printed as "avmctl: MESSAGE"); 3 the node refused the request for want of a
 * valid token (EAUTH) or of a permission (EPERM). */
#ifndef AVM_CLI_REMOTE_H
#define AVM_CLI_REMOTE_H

int remote__run(const char *node, const char *on, int argc, char **argv);
int remote__cluster(const char *node, int argc, char **argv);
/* controller create|ls|status|add|remove|transfer|put|get: replicated controllers. */
int remote__controller(const char *node, int argc, char **argv);
int remote__bundle(const char *node, int argc, char **argv);
/* sub: ls, show, result, trace, suspend, resume or kill. */
int remote__exec(const char *node, const char *sub, int argc, char **argv);
/* sub: ls or show. */
int remote__obj(const char *node, const char *sub, int argc, char **argv);
int remote__send(const char *node, int argc, char **argv);
int remote__status(const char *node, int argc, char **argv);
int remote__txs(const char *node, int argc, char **argv);
/* pure ls: the node's pure-function registry, with who made each version. */
int remote__pure(const char *node, int argc, char **argv);
/* Every request carries token (borrowed for the process's life; NULL: none). */
void remote__set_token(const char *token);
/* The TLS files for tls+tcp:// nodes (borrowed for the process's life; NULL:
 * none). */
struct avm_ctl_tls;
void remote__set_tls(const struct avm_ctl_tls *tls);

#endif
