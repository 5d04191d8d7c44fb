/*
 * fresh-login: the benchmark's C programs, built by bench/run.sh.
 *
 *   fresh-login CONFDIR SERVICE USER CODE
 *       One login in a process of its own, as sshd's per-connection child
 *       does one: pam_start_confdir, pam_authenticate answering every
 *       prompt with CODE, pam_end. The exit status is the PAM result.
 *
 *   fresh-login --load MODULE COUNT
 *       Loads and unloads MODULE COUNT times the way libpam does (dlopen
 *       with RTLD_NOW, then dlclose) and prints the microseconds per pair.
 *
 * It is written in C on purpose: a C host has no Rust runtime loaded, so a
 * Rust module pays for everything it brings (libgcc_s included), exactly as
 * it would inside sshd, sudo or a C daemon.
 */
#include <dlfcn.h>
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *code;

/* Answers each prompt with the code; other messages need no answer. */
static int answer(int count, const struct pam_message **messages,
                  struct pam_response **replies, void *data)
{
    (void)data;
    if (count <= 0 || messages == NULL || replies == NULL)
        return PAM_CONV_ERR;

    struct pam_response *list = calloc((size_t)count, sizeof(*list));
    if (list == NULL)
        return PAM_BUF_ERR;

    for (int i = 0; i < count; i++) {
        int style = messages[i]->msg_style;
        if (style != PAM_PROMPT_ECHO_OFF && style != PAM_PROMPT_ECHO_ON)
            continue;
        list[i].resp = strdup(code);
        if (list[i].resp == NULL) {
            for (int j = 0; j < i; j++)
                free(list[j].resp);
            free(list);
            return PAM_BUF_ERR;
        }
    }

    *replies = list;
    return PAM_SUCCESS;
}

/* Failure delays are skipped for every module alike. */
static void no_delay(int status, unsigned int usec, void *data)
{
    (void)status;
    (void)usec;
    (void)data;
}

static int login(const char *confdir, const char *service, const char *user)
{
    struct pam_conv conversation = { answer, NULL };
    pam_handle_t *handle = NULL;

    int status = pam_start_confdir(service, user, &conversation, confdir, &handle);
    if (status != PAM_SUCCESS)
        return 100 + status;

    void (*delay)(int, unsigned int, void *) = no_delay;
    status = pam_set_item(handle, PAM_FAIL_DELAY, (const void *)delay);
    if (status == PAM_SUCCESS)
        status = pam_authenticate(handle, 0);

    pam_end(handle, status);
    return status;
}

static double microseconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec * 1e6 + (double)now.tv_nsec / 1e3;
}

static int load_loop(const char *module, long count)
{
    /* The first load is not counted: it brings the file into the cache. */
    void *first = dlopen(module, RTLD_NOW);
    if (first == NULL) {
        fprintf(stderr, "fresh-login: %s\n", dlerror());
        return 1;
    }
    dlclose(first);

    double started = microseconds();
    for (long i = 0; i < count; i++) {
        void *loaded = dlopen(module, RTLD_NOW);
        if (loaded == NULL) {
            fprintf(stderr, "fresh-login: %s\n", dlerror());
            return 1;
        }
        dlclose(loaded);
    }
    printf("%.2f\n", (microseconds() - started) / (double)count);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--load") == 0) {
        long count = strtol(argv[3], NULL, 10);
        return count > 0 ? load_loop(argv[2], count) : 2;
    }
    if (argc != 5) {
        fprintf(stderr, "usage: fresh-login CONFDIR SERVICE USER CODE\n"
                        "       fresh-login --load MODULE COUNT\n");
        return 2;
    }

    code = argv[4];
    return login(argv[1], argv[2], argv[3]);
}
