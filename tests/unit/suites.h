/* suites: the Check suites tests/unit/main.c runs, one per module. */
#ifndef FLEETFS_TESTS_SUITES_H
#define FLEETFS_TESTS_SUITES_H

#include <check.h>

Suite *bkschema_suite(void);
Suite *ydoc_suite(void);
Suite *util_suite(void);
Suite *seal_suite(void);
Suite *store_suite(void);
Suite *state_suite(void);
Suite *rootcfg_suite(void);
Suite *fleetspec_suite(void);
Suite *probe_suite(void);
Suite *fleets_suite(void);
Suite *records_suite(void);
Suite *ssh_suite(void);
Suite *http_suite(void);
Suite *offers_suite(void);
Suite *catalog_suite(void);
Suite *sigv4_suite(void);
Suite *awscreds_suite(void);
Suite *awsapi_suite(void);

#endif
