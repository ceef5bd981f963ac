/*
 * replay_corpus.c -- run fuzz inputs without libFuzzer (any C compiler).
 *
 *   replay_corpus DIR_OR_FILE...
 *
 * Feeds every regular file (directories: their files, in name order) to
 * LLVMFuzzerTestOneInput once.  A failed check inside aborts the process,
 * so reaching the end means every input passed.
 */
#define _DEFAULT_SOURCE  /* scandir under -std=c11 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) { perror(path); return 0; }
    size_t cap = 4096, n = 0, got;
    uint8_t *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, fp)) > 0) {
        n += got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(fp);
    if (!buf) { fprintf(stderr, "%s: out of memory\n", path); return 0; }
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 1;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Runs every file of dir; returns the count, or -1 on a read error. */
static long run_dir(const char *dir) {
    struct dirent **names;
    int n = scandir(dir, &names, NULL, by_name);
    if (n < 0) { perror(dir); return -1; }
    long count = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(path)) count++;
            else failed = 1;
        }
        free(names[i]);
    }
    free(names);
    return failed ? -1 : count;
}

int main(int argc, char **argv) {
    long total = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        long n = stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)
                     ? run_dir(argv[i]) : run_file(argv[i]);
        if (n < 0 || (n == 0 && S_ISDIR(st.st_mode))) {
            fprintf(stderr, "replay_corpus: cannot read inputs from %s\n", argv[i]);
            return 1;
        }
        total += n;
    }
    printf("fuzz corpus: %ld inputs replayed, no failed check\n", total);
    return total > 0 ? 0 : 1;
}
