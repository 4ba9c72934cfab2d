/* Test fixture: a "DNS server" that answers nothing and prints one line per datagram it receives. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int main(void) {
    struct sockaddr_in a, from;
    char buf[2048], ip[INET_ADDRSTRLEN];
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(53);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("dnslog");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n < 0) continue;
        inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
        printf("query from %s (%zd bytes)\n", ip, n);
        fflush(stdout);
    }
}
