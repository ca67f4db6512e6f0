/* The unit test runner: every suite of suites.h in one SRunner (CK_FORK from the environment,
 * `make check` sets yes), normal output, exit status 1 when anything failed. */
#include <check.h>
#include <stdlib.h>

#include "suites.h"

int main(void)
{
	Suite *(*const suites[])(void) = {util_suite,  ydoc_suite,    seal_suite,    store_suite,
					  state_suite, rootcfg_suite, bkschema_suite, fleetspec_suite,
					  probe_suite, ssh_suite, http_suite, fleets_suite, records_suite,
					  offers_suite,
					  catalog_suite, sigv4_suite, awscreds_suite,
					  awsapi_suite};
	SRunner *sr = srunner_create(NULL);
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		srunner_add_suite(sr, suites[i]());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
