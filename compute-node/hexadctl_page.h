/* hexadctl page: a page as each member of its PG serves it. */
#ifndef HX_HEXADCTL_PAGE_H
#define HX_HEXADCTL_PAGE_H

#include "config.h"

/* argv[0] is "page"; returns the exit status. */
int hexadctl_page(const hx_cluster_cfg *cfg, int argc, char **argv);

#endif
