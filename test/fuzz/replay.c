/*
 * Runs a fuzz harness once on each file named on the command line, or on
 * each file inside a named directory, without libFuzzer. Builds without
 * clang use it to replay the seed corpus and the saved crashers, so these
 * inputs run under every compiler and sanitizer setup of the project.
 */
#include "fuzz_target.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static size_t files_run;

static int
replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL, *exact;
    size_t size = 0, cap = 0, n;

    if (f == NULL) {
        fprintf(stderr, "replay: failed to open %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    do {
        if (cap - size < 4096) {
            uint8_t *bigger = realloc(data, cap * 2 + 4096);

            if (bigger == NULL) {
                fprintf(stderr, "replay: out of memory reading %s\n", path);
                free(data);
                fclose(f);
                return -1;
            }
            data = bigger;
            cap = cap * 2 + 4096;
        }
        n = fread(data + size, 1, cap - size, f);
        size += n;
    } while (n > 0);
    fclose(f);

    /* Shrinking to the exact size lets AddressSanitizer see reads past
     * the end of the input. */
    exact = realloc(data, size ? size : 1);
    if (exact == NULL) {
        fprintf(stderr, "replay: out of memory reading %s\n", path);
        free(data);
        return -1;
    }
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, size);
    LLVMFuzzerTestOneInput(exact, size);
    free(exact);
    files_run++;
    return 0;
}

static int
replay_path(const char *path)
{
    struct stat st;
    DIR *dir;
    struct dirent *entry;
    int rc = 0;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: failed to read %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return replay_file(path);

    dir = opendir(path);
    if (dir == NULL) {
        fprintf(stderr, "replay: failed to open %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    while ((entry = readdir(dir)) != NULL) {
        char child[4096];

        if (strcmp(entry->d_name, ".") == 0 ||
            strcmp(entry->d_name, "..") == 0)
            continue;
        snprintf(child, sizeof(child), "%s/%s", path, entry->d_name);
        if (replay_path(child) != 0)
            rc = -1;
    }
    closedir(dir);
    return rc;
}

int
main(int argc, char **argv)
{
    int rc = 0;

    for (int i = 1; i < argc; i++) {
        if (replay_path(argv[i]) != 0)
            rc = 1;
    }
    fprintf(stderr, "replay: %zu inputs run\n", files_run);
    return rc;
}
