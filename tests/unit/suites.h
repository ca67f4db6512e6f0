/* suites: the Check suites tests/unit/main.c runs, one per module. */
#ifndef FLEETFS_TESTS_SUITES_H
#define FLEETFS_TESTS_SUITES_H

#include <check.h>

Suite *bkschema_suite(void);

#endif
