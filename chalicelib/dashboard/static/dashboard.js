/*
 * The dashboard's only script, served from the app's own origin (the pages' CSP allows
 * 'self' scripts only). Everything works without it: the search is a plain GET form
 * (one hit opens the customer, on the server), the portal link is a read-only field to
 * select and copy. It adds keyboard shortcuts, a copy button, and one-click forms.
 */
(function () {
  'use strict';

  // The header's search field: the form (or the field itself) has id global-search.
  function searchField() {
    var el = document.getElementById('global-search');
    if (!el) {
      return null;
    }
    if (el.tagName === 'INPUT') {
      return el;
    }
    return el.querySelector('input[type=search], input[name=q]');
  }

  // Typing somewhere: a shortcut key is the user's text, not a command.
  function typing(target) {
    if (!target || target === document.body) {
      return false;
    }
    if (target.isContentEditable) {
      return true;
    }
    return Boolean(target.closest &&
      target.closest('input, textarea, select, [contenteditable]:not([contenteditable="false"])'));
  }

  // Ctrl+K / Cmd+K anywhere, and "/" when not typing, focus the search. Ctrl/Cmd+F
  // stays the browser's own find.
  document.addEventListener('keydown', function (event) {
    if (event.defaultPrevented || event.isComposing) {
      return;
    }
    var key = (event.key || '').toLowerCase();
    var field;
    if (key === 'k' && (event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey) {
      field = searchField();
    } else if (event.key === '/' && !event.ctrlKey && !event.metaKey && !event.altKey &&
               !typing(event.target)) {
      field = searchField();
    }
    if (field) {
      event.preventDefault();
      field.focus();
      field.select();
    }
  });

  // "Copy customer portal link": the button is shown only where it can work.
  document.querySelectorAll('button[data-copy]').forEach(function (button) {
    var input = document.getElementById(button.dataset.copy);
    var said = document.querySelector('[data-copied]');
    if (!input) {
      return;
    }
    button.hidden = false;
    button.addEventListener('click', function () {
      function done(ok) {
        if (said) {
          said.textContent = ok ? 'Copied.' : 'Select the link and copy it.';
        }
      }
      input.select();
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(input.value).then(function () { done(true); },
          function () { done(document.execCommand && document.execCommand('copy')); });
      } else {
        done(document.execCommand && document.execCommand('copy'));
      }
    });
  });

  // A form is sent once: a second click while the first request is on its way does
  // nothing.
  document.querySelectorAll('form[data-once]').forEach(function (form) {
    form.addEventListener('submit', function (event) {
      if (form.dataset.sending) {
        event.preventDefault();
        return;
      }
      form.dataset.sending = '1';
    });
  });

  // The outcome of the last action gets the focus, so it is read out and seen first.
  var outcome = document.querySelector('[data-focus]');
  if (outcome) {
    outcome.focus();
  }
}());
