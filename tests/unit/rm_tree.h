/* Removes a test's temporary directory and everything in it. */
#ifndef HX_TEST_RM_TREE_H
#define HX_TEST_RM_TREE_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static int hx_test_rm_entry(const char *path, const struct stat *sb, int flag,
                            struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void hx_test_rm_tree(const char *dir)
{
    nftw(dir, hx_test_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
