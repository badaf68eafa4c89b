/*
 * The library floor (bench.py, scenario "floor"): a process that links the
 * daemon's libraries and starts them as the daemon does (an nng socket and
 * its threads; for "supervisor" a libmicrohttpd daemon, for "child"
 * libcurl and an OpenSSL client context), then waits.  Three of them
 * (one supervisor, two children) are what the daemon's memory cannot go
 * below while it uses Debian's shared libraries.
 *
 * usage: floor supervisor|child [CA-FILE]
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <openssl/ssl.h>
#include <yaml.h>

int
main(int argc, char **argv)
{
	struct MHD_Daemon *d = NULL;
	yaml_parser_t parser;
	SSL_CTX *ctx = NULL;
	CURLM *multi = NULL;
	CURL *easy = NULL;
	nng_socket s;
	json_t *j;

	if (argc < 2 || (strcmp(argv[1], "supervisor") != 0 &&
	                    strcmp(argv[1], "child") != 0)) {
		fprintf(stderr, "usage: floor supervisor|child [CA-FILE]\n");
		return 2;
	}
	j = json_pack("{s:i}", "x", 1);
	json_decref(j);
	yaml_parser_initialize(&parser);
	yaml_parser_delete(&parser);
	if (nng_pub0_open(&s) != 0)
		return 1;
	if (strcmp(argv[1], "supervisor") == 0) {
		d = MHD_start_daemon(MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL,
		    NULL, NULL, MHD_OPTION_END);
	} else {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		multi = curl_multi_init();
		easy = curl_easy_init();
		ctx = SSL_CTX_new(TLS_client_method());
		if (argc > 2)
			SSL_CTX_load_verify_locations(ctx, argv[2], NULL);
	}
	pause(); /* measured from outside, then killed */
	SSL_CTX_free(ctx);
	curl_easy_cleanup(easy);
	curl_multi_cleanup(multi);
	if (d != NULL)
		MHD_stop_daemon(d);
	nng_close(s);
	return 0;
}
