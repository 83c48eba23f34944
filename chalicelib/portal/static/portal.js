/*
 * The customer portal's only script, served from the app's own origin (the pages' CSP
 * allows 'self' and, on the card pages only, Stripe.js). Every form works without it
 * except adding a card, which needs Stripe.js: card numbers go from the browser to
 * Stripe and never reach our servers.
 */
(function () {
  'use strict';

  function show(element, message) {
    if (element) {
      element.textContent = message || '';
    }
  }

  // A form is sent once: a second click while the first request is on its way does
  // nothing (the server also pays a payment form's attempt once).
  document.querySelectorAll('form[data-once]').forEach(function (form) {
    form.addEventListener('submit', function (event) {
      if (form.dataset.sending) {
        event.preventDefault();
        return;
      }
      form.dataset.sending = '1';
      form.querySelectorAll('button[type=submit]').forEach(function (button) {
        button.setAttribute('aria-disabled', 'true');
      });
    });
  });

  // The outcome of the last action (a notice, a decline) gets the focus, so it is read
  // out and seen first.
  var outcome = document.querySelector('[data-focus]');
  if (outcome) {
    outcome.focus();
  }

  // "Add a card": Stripe.js's Card Element and a SetupIntent. Once Stripe has saved the
  // card, our form posts its id (with the CSRF token) to assign it.
  var cardForm = document.getElementById('card-form');
  if (cardForm) {
    var errors = document.getElementById('card-errors');
    var submit = document.getElementById('card-submit');
    if (typeof window.Stripe !== 'function') {
      show(errors, 'The card form could not be loaded. Please reload the page.');
      submit.disabled = true;
    } else {
      var stripe = window.Stripe(cardForm.dataset.stripeKey);
      var card = stripe.elements().create('card');
      card.mount('#card-element');
      card.on('change', function (event) {
        show(errors, event && event.error ? event.error.message : '');
      });
      var busy = false;
      cardForm.addEventListener('submit', function (event) {
        event.preventDefault();
        if (busy) {
          return;
        }
        busy = true;
        submit.disabled = true;
        submit.textContent = 'Saving…';
        show(errors, '');
        stripe.confirmCardSetup(cardForm.dataset.clientSecret, {payment_method: {card: card}})
          .then(function (result) {
            if (result.error || !result.setupIntent) {
              busy = false;
              submit.disabled = false;
              submit.textContent = 'Save card';
              show(errors, (result.error && result.error.message) ||
                   'The card could not be saved. Please check it and try again.');
              errors.focus();
              return;
            }
            var saved = result.setupIntent.payment_method;
            cardForm.elements.payment_method.value =
              typeof saved === 'string' ? saved : saved.id;
            cardForm.submit();  // a plain POST: no submit event, so no second confirm
          });
      });
    }
  }

  // A payment that needs the bank's confirmation (3-D Secure): Stripe.js asks for it.
  var action = document.getElementById('payment-action');
  if (action) {
    var button = action.querySelector('button');
    var problem = document.getElementById('payment-action-error');
    if (typeof window.Stripe !== 'function') {
      show(problem, 'Stripe could not be loaded. Please reload the page.');
      button.disabled = true;
    } else {
      var payments = window.Stripe(action.dataset.stripeKey);
      button.addEventListener('click', function () {
        button.disabled = true;
        show(problem, '');
        payments.confirmCardPayment(action.dataset.clientSecret).then(function (result) {
          if (result.error) {
            button.disabled = false;
            show(problem, result.error.message || 'The payment was not confirmed.');
            return;
          }
          window.location.assign(action.dataset.done);
        });
      });
    }
  }
}());
