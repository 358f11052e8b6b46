/* The pod sandbox's process: holds the namespaces, reaps children, exits on a signal. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void die(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) { signal(SIGINT, die); signal(SIGTERM, die); signal(SIGCHLD, reap); for (;;) pause(); }
